//! service.json and identity.json: upstream-compatible loading, validation, defaults, environment overrides, Go durations
