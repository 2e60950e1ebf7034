"""kexue.nn"""
