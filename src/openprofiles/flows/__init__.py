"""Flows: pulling external applications' records into an object type (PutIntegration with a
FlowDefinition)."""
