"""The intermediate representation: a LayerGraph and the passes that lower it."""
