"""Profile objects: the records PutProfileObject stores, listed and deleted per profile."""
