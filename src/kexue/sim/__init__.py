"""kexue.sim"""
