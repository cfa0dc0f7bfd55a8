"""
Coverage-guided fuzzing of the startup/authentication path and the wire
codec (C{make fuzz}; see L{tests.fuzz.targets} and L{tests.fuzz.run}).
"""
