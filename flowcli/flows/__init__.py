"""Flow files: parsing, validation, import and export."""
