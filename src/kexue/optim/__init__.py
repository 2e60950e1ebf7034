"""kexue.optim"""
