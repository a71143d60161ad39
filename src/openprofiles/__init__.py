"""OpenProfiles: a self-hosted customer-profile service wire-compatible with Amazon Connect
Customer Profiles (API 2020-08-15)."""

__version__ = "0.1.0"
