"""
Authentication: HBA matching, auth exchanges and methods.
"""
