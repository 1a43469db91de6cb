"""Member care: notifications sent to members and their delivery results."""
