"""synthseg_bids.core"""
