"""The AWS rest-json edge of OpenProfiles.

This package knows the botocore service model's shapes and the AWS wire protocol (routing,
parsing, validation, SigV4, serialization, error rendering) and nothing about business rules.
Feature packages never import it; the app wires it to their handlers.
"""
