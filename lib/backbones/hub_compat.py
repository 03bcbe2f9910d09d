"""TF Hub feature vectors in Keras 3 (being written: `register_hub_backbone`, `export_hub`)."""
