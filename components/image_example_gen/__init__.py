"""ExampleGen for the IDX gz files that MNIST-style datasets ship in."""
