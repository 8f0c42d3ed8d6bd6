"""Qt widgets. They render values from ``backend`` and turn user gestures into intents."""
