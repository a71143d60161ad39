"""Tags on resources (TagResource, UntagResource, ListTagsForResource)."""
