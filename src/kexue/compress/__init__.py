"""kexue.compress"""
