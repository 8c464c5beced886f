"""models: pydantic v2 wire models (DESIGN.md "Topics"). Imports nothing of ours."""
