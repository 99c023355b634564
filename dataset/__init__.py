"""The data layer: input layouts, image inspection, the build-time profile and proposed schema."""
