# -*- test-case-name: tests.unit.test_auth_methods -*-
"""
Dropin: the built-in authentication methods as plugin instances.

Only instances live here (C{getPlugins} imports every dropin); the classes
are in L{pgtwist.auth.methods}.
"""

from __future__ import annotations

from pgtwist.auth.methods import (
    CertAuthMethod,
    Md5AuthMethod,
    PasswordAuthMethod,
    RejectAuthMethod,
    ScramSha256AuthMethod,
    TrustAuthMethod,
)

trustAuthMethod = TrustAuthMethod()
rejectAuthMethod = RejectAuthMethod()
passwordAuthMethod = PasswordAuthMethod()
md5AuthMethod = Md5AuthMethod()
scramSha256AuthMethod = ScramSha256AuthMethod()
certAuthMethod = CertAuthMethod()
