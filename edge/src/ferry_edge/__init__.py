"""ferry-edge: the device agent."""
