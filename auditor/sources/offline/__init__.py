"""Offline sources: a bundle written by `snapaudit collect`, or a directory laid out like
libvirt's snapshot metadata."""
