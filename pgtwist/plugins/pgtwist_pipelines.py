"""
The built-in pipelines, as plugins.
"""

from pgtwist.pipelines.session import SessionPipeline

sessionPipeline = SessionPipeline()
