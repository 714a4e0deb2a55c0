"""synthseg_bids.interfaces"""
