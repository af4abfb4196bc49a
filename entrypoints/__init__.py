"""Process mains and the one composition root; no business logic lives here."""
