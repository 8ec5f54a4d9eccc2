"""Static files of the local trace viewer (HTML, JS, CSS; no build step)."""
