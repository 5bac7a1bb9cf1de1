"""Letter authors: accounts and sign-in, drafting and publishing, revisions, moderation,
export and milestone emails. The views are in letters/views/ (authors, drafting,
moderation, history)."""
