"""The web page in real headless Chromium (Selenium + Debian chromedriver): type a query, see both columns."""

import os
import shutil
from pathlib import Path

import pytest

from reldistill.recipe.retrieval import ServeConfig
from reldistill.retrieval.pipeline import SearchPipeline
from reldistill.retrieval.service import create_app
from tests.retrieval_testkit import FakeReranker, live_server, small_run, torch_threads
from tests.conftest import TEST_RUNTIME

CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (Path(CHROMEDRIVER).exists() and (shutil.which("chromium") or shutil.which("chromium-browser"))):
        pytest.fail("headless Chromium is missing: run `make browser` (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.mark.slow
def test_page_searches_and_compares_two_pipelines(browser, tmp_path_factory, esci_dir, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    run, data, tq, _ = small_run(tmp_path_factory, esci_dir)
    with torch_threads(1):
        main = SearchPipeline.from_run(run, reranker=FakeReranker(), name="distilled", runtime=TEST_RUNTIME)
        base = main.with_student("minilm-l6", name="base minilm-l6")
        app = create_app(main, ServeConfig(), compare=base)
        query = tq["query"].iloc[0]
        with live_server(app) as url:
            browser.get(url + "/")
            wait = WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,))
            wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#col-right .pipeline option")))
            box = browser.find_element(By.ID, "q")
            box.send_keys(query, Keys.ENTER)
            for side in ("left", "right"):
                wait.until(lambda d, s=side: len(d.find_elements(By.CSS_SELECTOR, f"#col-{s} li.result")) == 10)
            left = browser.find_elements(By.CSS_SELECTOR, "#col-left li.result")
            right = browser.find_elements(By.CSS_SELECTOR, "#col-right li.result")
            assert Select(browser.find_element(By.CSS_SELECTOR, "#col-right .pipeline")).first_selected_option.get_attribute("value") == "compare"
            assert all(li.find_element(By.CSS_SELECTOR, ".title").text for li in left + right)
            # a judged query: each result shows its E/S/C/I label (or '?' when that product was not judged)
            judged = set(tq[tq["query"] == query]["product_id"])
            labelled = [li for li in left if li.get_attribute("data-product-id") in judged]
            assert labelled and all(li.find_element(By.CSS_SELECTOR, ".lab").text in "ESCI" for li in labelled)
            # switch the right column to hybrid + rerank on the main pipeline
            Select(browser.find_element(By.CSS_SELECTOR, "#col-right .pipeline")).select_by_value("main")
            Select(browser.find_element(By.CSS_SELECTOR, "#col-right .mode")).select_by_value("rerank")
            wait.until(lambda d: "rerank #1" in d.find_element(By.CSS_SELECTOR, "#col-right li.result .meta").text)
            Select(browser.find_element(By.CSS_SELECTOR, "#col-right .pipeline")).select_by_value("compare")
            Select(browser.find_element(By.CSS_SELECTOR, "#col-right .mode")).select_by_value("hybrid")
            wait.until(lambda d: "rerank" not in d.find_element(By.CSS_SELECTOR, "#col-right li.result .meta").text)
            shot = tmp_path / "webpage.png"
            assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
            if os.environ.get("RELDISTILL_SCREENSHOT"):
                shutil.copy(shot, os.environ["RELDISTILL_SCREENSHOT"])
