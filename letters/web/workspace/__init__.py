"""The author workspace's pages: sign in, drafting and publishing, moderation and export."""
