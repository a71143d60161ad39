"""Contact records in (Amazon Connect contact-record format), live contact events, and
contact history."""
