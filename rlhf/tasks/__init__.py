"""Tasks: the offline embedded review task and its gold reward."""
