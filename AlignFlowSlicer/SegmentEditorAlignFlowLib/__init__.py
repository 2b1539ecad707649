"""The 'AlignFlow' Segment Editor effect (registered by the AlignFlowSlicer module at startup)."""
