"""Getting media in: library scan, filename parsing, frame sampling and dataset builders."""
