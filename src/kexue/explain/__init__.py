"""kexue.explain"""
