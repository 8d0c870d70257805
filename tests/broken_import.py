"""A module that fails while being imported, as a user's broken app would."""

1 / 0
