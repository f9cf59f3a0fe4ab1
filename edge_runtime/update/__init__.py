"""Model updates on the device: the version store and validation in a child process."""
