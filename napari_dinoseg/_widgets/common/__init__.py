"""What every dock repeats: short layer names and their metadata, starting workers and
reporting their errors, and the Qt field builders (backbone / weights / device, spin boxes).
"""
