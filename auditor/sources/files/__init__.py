"""Facts about the files the metadata names (images, memory files) and the images beside them
that nothing names."""
