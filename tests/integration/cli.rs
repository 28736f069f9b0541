// Tests for this area go here.
