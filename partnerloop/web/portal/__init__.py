"""The affiliate portal: /portal, and / on a program's own domain."""
