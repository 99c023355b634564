"""ExampleGen for images in any layout dataset.layouts reads: folders, manifests, TFRecords, IDX."""
