"""Helpers shared by the Mask2Former modules."""
