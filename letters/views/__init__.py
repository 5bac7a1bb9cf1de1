"""HTTP views: one module per area. Views parse, call an action, render."""
