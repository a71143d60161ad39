"""Identity resolution: merging profiles (and undoing merges), rule-based matching."""
