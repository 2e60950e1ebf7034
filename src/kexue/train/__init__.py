"""kexue.train"""
