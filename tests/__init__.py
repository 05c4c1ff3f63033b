"""tinyhttp's tests."""
