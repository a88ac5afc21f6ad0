//! End-to-end tests of GOS live in `tests/`: each file there is one scenario over real processes and sockets.
