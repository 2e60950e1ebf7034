"""kexue.experiments"""
