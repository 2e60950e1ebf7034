"""kexue.data"""
