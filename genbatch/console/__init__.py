"""What people look at: the terminal views of `status`/`watch` and the web dashboard."""
