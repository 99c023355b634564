"""The data and serving contract every role imports: example keys, the dataset spec, signatures."""
