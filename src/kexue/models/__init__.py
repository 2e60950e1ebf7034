"""kexue.models"""
