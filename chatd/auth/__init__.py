"""
Authentication: password hashing, access tokens, rate limits.
"""
